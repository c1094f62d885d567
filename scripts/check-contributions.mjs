// Fails the build when a command contributed in package.json is never registered in src/ (or the
// reverse), and when a contributed command lacks the "QuantLens" category. The real-VS-Code tests check
// the same at run time with vscode.commands.getCommands; this static pass catches it without a window.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

function sources(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

const registered = new Set();
for (const file of sources(join(root, 'src/extension'))) {
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(/registerCommand\(\s*['"]([\w.]+)['"]/g)) registered.add(match[1]);
}

const problems = [];
const contributed = pkg.contributes?.commands ?? [];
for (const command of contributed) {
  if (command.category !== 'QuantLens') problems.push(`${command.command}: category must be "QuantLens"`);
  if (!registered.has(command.command)) problems.push(`${command.command}: contributed but never registered in src/extension`);
}
const contributedIds = new Set(contributed.map((c) => c.command));
for (const menu of Object.values(pkg.contributes?.menus ?? {})) {
  for (const item of menu) {
    if (item.command && !contributedIds.has(item.command)) problems.push(`menu entry ${item.command}: not a contributed command`);
  }
}
if (problems.length) {
  console.error(`package.json contributions are inconsistent:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`${contributed.length} contributed commands, all registered and in category QuantLens`);
