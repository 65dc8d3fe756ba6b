// clients.mjs makes calls through the official `openai` and `ollama` npm
// clients and prints what each client returned, or the error it raised, as
// one JSON object — so the Go interop tests can assert on exactly what a
// developer using these SDKs would see.
//
// Input (stdin, JSON): {"calls": [{"id", "sdk": "openai"|"ollama", "op",
// "base_url", "token", "model", "input"}]}
//   openai ops: models.list, chat, chat.stream, chat.stream_usage (asks for
//   stream_options.include_usage), embeddings
//   ollama ops: chat, list
// Output (stdout, JSON): {"<id>": {"ok": true, ...result} |
//   {"ok": false, "name", "status", "code", "type", "param", "message", "error"}}

import OpenAI from 'openai';
import { Ollama } from 'ollama';

// Both SDKs may print to stdout (ollama logs how it reads an error body);
// stdout carries only the result.
console.log = (...args) => console.error(...args);

async function readStdin() {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return JSON.parse(text);
}

const messages = (call) => [{ role: 'user', content: call.input ?? 'hello' }];

const openaiOps = {
  async 'models.list'(client) {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    return { ids };
  },
  async chat(client, call) {
    const completion = await client.chat.completions.create({ model: call.model, messages: messages(call) });
    return { model: completion.model, content: completion.choices[0].message.content };
  },
  'chat.stream': (client, call) => streamChat(client, call, {}),
  'chat.stream_usage': (client, call) => streamChat(client, call, { stream_options: { include_usage: true } }),
  async embeddings(client, call) {
    // The SDK asks for base64 and decodes it, as it does against OpenAI.
    const res = await client.embeddings.create({ model: call.model, input: call.input ?? 'hello' });
    return { model: res.model, embedding: res.data[0].embedding };
  },
};

// streamChat counts every chunk the SDK yields and keeps the last usage one
// carries, so the test sees exactly the chunks the client got.
async function streamChat(client, call, extra) {
  const stream = await client.chat.completions.create({ model: call.model, messages: messages(call), stream: true, ...extra });
  const deltas = [];
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const delta = chunk.choices[0]?.delta?.content;
    if (delta) deltas.push(delta);
  }
  return { deltas, content: deltas.join(''), chunks, usage };
}

const ollamaOps = {
  async chat(client, call) {
    const res = await client.chat({ model: call.model, messages: messages(call), stream: false });
    return { model: res.model, content: res.message.content };
  },
  async list(client) {
    const res = await client.list();
    return { names: res.models.map((m) => m.name) };
  },
};

function describeError(err) {
  return {
    ok: false,
    name: err?.constructor?.name ?? typeof err,
    status: err?.status ?? err?.status_code ?? null,
    code: err?.code ?? null,
    type: err?.type ?? null,
    param: err?.param ?? null,
    message: err?.message ?? String(err),
    error: err?.error ?? null,
  };
}

async function perform(call) {
  if (call.sdk === 'openai') {
    const client = new OpenAI({ baseURL: `${call.base_url}/v1`, apiKey: call.token, maxRetries: 0, timeout: 15000 });
    const op = openaiOps[call.op];
    if (!op) throw new Error(`unknown openai op ${call.op}`);
    return op(client, call);
  }
  if (call.sdk === 'ollama') {
    const client = new Ollama({ host: call.base_url, headers: { Authorization: `Bearer ${call.token}` } });
    const op = ollamaOps[call.op];
    if (!op) throw new Error(`unknown ollama op ${call.op}`);
    return op(client, call);
  }
  throw new Error(`unknown sdk ${call.sdk}`);
}

const { calls } = await readStdin();
const results = {};
await Promise.all(calls.map(async (call) => {
  try {
    results[call.id] = { ok: true, ...(await perform(call)) };
  } catch (err) {
    results[call.id] = describeError(err);
  }
}));
process.stdout.write(`${JSON.stringify(results)}\n`);
