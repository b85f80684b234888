// Shared test fixtures and helpers for every VYR package (private; never published).
export {
  buildLargeModule,
  buildWatFixture,
  C_FIXTURES,
  type CFixtureName,
  FIXTURES_DIR,
  fixturePath,
  type LargeModuleOptions,
  WAT_FIXTURES,
  type WatFixtureName,
  watFixtureFile,
  watSource,
} from './fixtures.js';
export { cleanupTempDirs, tempDir } from './temp.js';
