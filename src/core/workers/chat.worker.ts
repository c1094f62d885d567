/** Entry of the chat worker thread (see src/core/chat/workerHandler.ts). */
import { parentPort } from 'node:worker_threads';
import { serveChat } from '../chat/workerHandler';

if (!parentPort) throw new Error('chat.worker must run in a worker thread');
serveChat(parentPort);
