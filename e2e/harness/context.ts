// What the global setup hands every test file: where the shared containers answer.
export const TEMPLATE_DATABASE = 'postern_template';

export interface E2eContext {
  postgres: { host: string; port: number; user: string; password: string; adminDatabase: string; image: string };
  redis: { host: string; port: number; image: string };
  maildev: { host: string; smtpPort: number; apiUrl: string; image: string };
  images: { postgres: string; redis: string; maildev: string };
}

declare module 'vitest' {
  export interface ProvidedContext {
    postern: E2eContext;
  }
}
