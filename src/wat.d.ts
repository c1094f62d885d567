/** A WebAssembly text file, compiled at build time (esbuild.mjs, wabt): the bytes of its binary module. */
declare module '*.wat' {
  const bytes: Uint8Array<ArrayBuffer>;
  export default bytes;
}
