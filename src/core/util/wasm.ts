/**
 * Loading the WebAssembly kernels. Each kernel module is a `.wat` file compiled at build time (esbuild.mjs)
 * into bytes that import one memory as `env.mem` and re-export it as `mem`.
 */

/** The module of `bytes`, or null where this host cannot run it (no WebAssembly, or no SIMD). */
export function compileKernels(bytes: Uint8Array<ArrayBuffer>): WebAssembly.Module | null {
  try {
    if (typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) return new WebAssembly.Module(bytes);
  } catch {
    // an engine that validates but cannot compile: the callers fall back to their JS path
  }
  return null;
}

/**
 * An instance of `module` over a fresh memory of at least `bytes` (one page at least).
 * Callers needing more memory make a new instance rather than grow this one: growing detaches the old
 * buffer, and the first ArrayBuffer detached in a thread makes V8 recompile every typed-array loop of that
 * thread with detach checks, ~25% slower for the rest of its life (measured on the statistics counter).
 */
export function instantiateWithMemory<Exports>(module: WebAssembly.Module, bytes: number): Exports {
  const memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(bytes / 65536)) });
  return new WebAssembly.Instance(module, { env: { mem: memory } }).exports as unknown as Exports;
}
