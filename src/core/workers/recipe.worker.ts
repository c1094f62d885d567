/**
 * The recipe worker: validation, the preview's analysis, hovers and completion of recipes and quantization
 * configs, off the extension host's thread. Each request is synchronous work on one document; the client
 * stops a stale or over-budget one by terminating this thread (a message could not interrupt it), so there
 * is no cancel message.
 */
import { parentPort } from 'node:worker_threads';
import { buildRecipePreview, completionsAt, hoverAt, validateQuantizationConfig, validateRecipe } from '../recipe';
import type { FromRecipeWorker, RecipeMethods, ToRecipeWorker } from './recipeProtocol';

const port = parentPort;
if (!port) throw new Error('recipe.worker must run in a worker thread');

function run(message: ToRecipeWorker): unknown {
  switch (message.method) {
    case 'validate': {
      const { text, kind, model } = message.params as RecipeMethods['validate']['params'];
      return kind === 'recipe' ? validateRecipe(text, { model }) : validateQuantizationConfig(text, { model });
    }
    case 'preview': {
      const { text, fileName, model } = message.params as RecipeMethods['preview']['params'];
      return buildRecipePreview(text, { fileName, model });
    }
    case 'hover': {
      const { text, position, kind } = message.params as RecipeMethods['hover']['params'];
      return hoverAt(text, position, kind);
    }
    case 'completion': {
      const { text, position, kind, model } = message.params as RecipeMethods['completion']['params'];
      return completionsAt(text, position, { kind, model });
    }
  }
}

port.on('message', (message: ToRecipeWorker) => {
  let reply: FromRecipeWorker;
  try {
    reply = { type: 'result', id: message.id, result: run(message) };
  } catch (error) {
    reply = { type: 'error', id: message.id, message: error instanceof Error ? error.message : String(error) };
  }
  port.postMessage(reply);
});
