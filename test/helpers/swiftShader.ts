/**
 * The WebGPU tests run on SwiftShader, the CPU Vulkan driver Debian's chromium ships (the test-host set-up
 * installs it and the Vulkan loader libvulkan1). Where it is absent they skip, saying why.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tempDir } from './paths';

/** SwiftShader's ICD manifest from Debian's chromium package (QUANTLENS_SWIFTSHADER_ICD overrides). */
export const SWIFTSHADER_ICD = process.env.QUANTLENS_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';

/** Why WebGPU on SwiftShader cannot run here, or undefined when it can. */
export function swiftShaderMissing(): string | undefined {
  if (!existsSync(SWIFTSHADER_ICD)) return `SwiftShader's Vulkan driver (${SWIFTSHADER_ICD}) is not installed (Debian package chromium)`;
  try {
    if (!/libvulkan\.so\.1\b/.test(execFileSync('sh', ['-c', 'ldconfig -p 2>/dev/null || /sbin/ldconfig -p'], { encoding: 'utf8' }))) return 'the Vulkan loader libvulkan.so.1 is not installed (Debian package libvulkan1)';
  } catch {
    return 'cannot list the shared libraries (ldconfig) to look for the Vulkan loader';
  }
  return undefined;
}

/**
 * Points the Vulkan loader at SwiftShader for this process and its children (it reads these when Dawn first
 * starts); returns the function that restores the environment.
 */
export function useSwiftShader(runtimeDir: string): () => void {
  const saved = { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  process.env.XDG_RUNTIME_DIR = runtimeDir;
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

/**
 * Registers, in the calling describe(), a scratch folder made before its tests and removed after them; on
 * 'webgpu' the suite is skipped (saying why) where SwiftShader cannot run, and the Vulkan loader points at
 * SwiftShader while it runs. Returns the folder's path (valid once the suite's tests start).
 */
export function deviceScratch(device: 'cpu' | 'webgpu'): () => string {
  let tmp: ReturnType<typeof tempDir> | undefined;
  let restore: (() => void) | undefined;
  before(function () {
    const missing = device === 'webgpu' ? swiftShaderMissing() : undefined;
    if (missing) {
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    tmp = tempDir();
    if (device === 'webgpu') restore = useSwiftShader(tmp.path);
  });
  after(() => {
    restore?.();
    tmp?.cleanup();
  });
  return () => {
    if (!tmp) throw new Error('deviceScratch: the folder exists only while the suite runs');
    return tmp.path;
  };
}
