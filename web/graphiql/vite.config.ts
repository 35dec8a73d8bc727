import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The built page is embedded into the Go binary (see ../web.go) and served at
// "/" with its hashed files under "/assets/". Everything (JS, CSS, fonts, the
// Monaco web workers) must come from this bundle: the page never loads
// anything from a CDN.
export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    // Monaco is big; do not warn about it on every build.
    chunkSizeWarningLimit: 4096,
    // Keep every asset a separate, hashed file under /assets/.
    assetsInlineLimit: 0,
    rolldownOptions: {
      onwarn(warning, warn) {
        // GraphiQL's React-compiler output starts modules with "use no memo";
        // dropping that directive when bundling is harmless.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  worker: {
    format: 'es',
  },
});
