import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The built chat is embedded into the Go binary (see ../web.go) and served
// under /app/ with its hashed files under /app/assets/. Nothing is loaded
// from a CDN: the page works on a machine with no internet.
export default defineConfig({
  base: '/app/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
  },
});
