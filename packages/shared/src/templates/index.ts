export {
  checkTemplateCommand,
  missingVariables,
  type RenderedContent,
  renderLocale,
  resolveLocale,
  type TemplateLookup,
  TemplateRenderError,
} from './render-template.ts';
export {
  canonicalLocale,
  loadTemplateCatalog,
  type TemplateCatalog,
  TemplateCatalogError,
  type TemplateDefinition,
  type TemplateLocale,
} from './template-catalog.ts';
