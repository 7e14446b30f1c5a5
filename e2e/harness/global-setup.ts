// Starts PostgreSQL, Redis and the maildev SMTP sink once for the whole e2e run, migrates a
// template database once, and hands the addresses to the test files (inject('postern')). Every test
// file then clones its own database from the template (test-database.ts). Teardown stops every
// container it started: Ryuk (Testcontainers' reaper) may be disabled where its image cannot be
// pulled, so nothing else would.

import { createLogger, runMigrations } from '@postern/shared';
import type { StartedTestContainer } from 'testcontainers';
import type { TestProject } from 'vitest/node';
import {
  assertDockerAvailable,
  describeContainer,
  MAILDEV_SMTP_PORT,
  MAILDEV_WEB_PORT,
  startMaildev,
  startPostgres,
  startRedis,
} from './containers.ts';
import { type E2eContext, TEMPLATE_DATABASE } from './context.ts';
import { images } from './images.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: StartedTestContainer[] = [];
  const teardown = async () => {
    await Promise.allSettled(started.map((container) => container.stop({ remove: true, removeVolumes: true })));
    console.log(`[e2e] stopped ${started.length} container(s)`);
  };
  try {
    await assertDockerAvailable();
    const t0 = Date.now();
    // Each container is recorded as soon as it runs, so a failure of another still stops it.
    const track = <T extends StartedTestContainer>(container: T): T => {
      started.push(container);
      return container;
    };
    const [postgres, redis, maildev] = await Promise.all([
      startPostgres().then(track),
      startRedis().then(track),
      startMaildev().then(track),
    ]);
    console.log(describeContainer('postgres', postgres, images.postgres));
    console.log(describeContainer('redis', redis, images.redis));
    console.log(describeContainer('maildev', maildev, images.maildev));
    console.log(`[e2e] containers ready in ${Date.now() - t0} ms`);

    const host = postgres.getHost();
    const port = postgres.getPort();
    const adminDsn = `postgres://postern:postern@${host}:${port}/postern_admin`;
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: adminDsn });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
    await admin.end();
    const t1 = Date.now();
    await runMigrations({
      dsn: `postgres://postern:postern@${host}:${port}/${TEMPLATE_DATABASE}`,
      logger: createLogger('e2e-setup', 'warn'),
    });
    console.log(`[e2e] template database ${TEMPLATE_DATABASE} migrated in ${Date.now() - t1} ms`);

    const context: E2eContext = {
      postgres: { host, port, user: 'postern', password: 'postern', adminDatabase: 'postern_admin', image: images.postgres },
      redis: { host: redis.getHost(), port: redis.getPort(), image: images.redis },
      maildev: {
        host: maildev.getHost(),
        smtpPort: maildev.getMappedPort(MAILDEV_SMTP_PORT),
        apiUrl: `http://${maildev.getHost()}:${maildev.getMappedPort(MAILDEV_WEB_PORT)}`,
        image: images.maildev,
      },
      images,
    };
    project.provide('postern', context);
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
