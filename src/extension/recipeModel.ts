/**
 * Which checkpoint a recipe is checked against: the `quantlens.recipe.model` setting, else the nearest
 * folder above the recipe that holds config.json and safetensors weights. Shared by the recipe validator
 * (recipeLanguage.ts) and the recipe preview (recipePreview.ts), so both judge a recipe against the same model.
 */
import * as vscode from 'vscode';
import { promises as fs } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

const MAX_ANCESTORS = 12;

/** Whether `dir` holds config.json and safetensors weights (a file or an index). */
export async function isCheckpointFolder(dir: string): Promise<boolean> {
  try {
    const names = await fs.readdir(dir);
    return names.includes('config.json') && names.some((n) => n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json'));
  } catch {
    return false;
  }
}

/** The `quantlens.recipe.model` setting, resolved against the recipe's workspace folder. */
export function settingModel(doc: vscode.TextDocument): string | undefined {
  const configured = vscode.workspace.getConfiguration('quantlens.recipe', doc.uri).get<string>('model')?.trim();
  if (!configured) return undefined;
  if (isAbsolute(configured)) return configured;
  const folder = vscode.workspace.getWorkspaceFolder(doc.uri) ?? vscode.workspace.workspaceFolders?.[0];
  return folder ? resolve(folder.uri.fsPath, configured) : undefined;
}

/** The nearest checkpoint folder above the recipe file (at most MAX_ANCESTORS levels up). */
export async function ancestorModel(doc: vscode.TextDocument): Promise<string | undefined> {
  if (doc.uri.scheme !== 'file') return undefined;
  let dir = dirname(doc.uri.fsPath);
  for (let i = 0; i < MAX_ANCESTORS; i++) {
    if (await isCheckpointFolder(dir)) return dir;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}

/** The setting when it is set, else the nearest checkpoint folder above the recipe. */
export async function recipeModel(doc: vscode.TextDocument): Promise<string | undefined> {
  const configured = vscode.workspace.getConfiguration('quantlens.recipe', doc.uri).get<string>('model')?.trim();
  return configured ? settingModel(doc) : ancestorModel(doc);
}
