/** Entry of the chat worker thread (see src/core/runtime/chatWorker.ts). */
import { parentPort } from 'node:worker_threads';
import { serveChat } from '../runtime/chatWorker';

if (!parentPort) throw new Error('chat.worker must run in a worker thread');
serveChat(parentPort);
