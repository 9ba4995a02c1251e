// llama-bench.mjs: the node-llama-cpp side of `task bench` (bench/llama.go).
//
// Loads a GGUF with node-llama-cpp's prebuilt CPU binaries only (never a
// download, never a source build), then for every prompt: clears the
// sequence, evaluates the prompt tokens and generates greedily, timing the
// first token (prompt processing + one sample) and the rest (decode).
// Prints one JSON object on stdout; logs go to stderr.
//
//   node llama-bench.mjs '{"dir":".data/bench-node","model":"m.gguf","prompts":["..."],"max_tokens":128,"threads":1}'
//
// Options (JSON, first argument): dir (where `task bench:setup` ran npm ci
// of this directory's package.json), model, prompts (texts, tokenized like the
// llamacpp plugin tokenizes a /v1/completions prompt: BOS + text, special
// tokens parsed), max_tokens, threads, context_size (default 1024),
// batch_size (default 512, also the ubatch, as in the plugin),
// flash_attention ("auto" by default: what the plugin leaves to llama.cpp),
// warmup (a prompt run untimed before the others; default: the first prompt).
import process from "node:process";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const opts = JSON.parse(process.argv[2] ?? "{}");

// Set before node-llama-cpp is imported: its config reads the env at import.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
const entry = createRequire(path.resolve(opts.dir, "package.json")).resolve("node-llama-cpp");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const maxTokens = opts.max_tokens ?? 128;
const threads = opts.threads ?? 1;
const notes = [];

const llama = await getLlama({
    gpu: false,            // CPU binaries only (@node-llama-cpp/linux-x64)
    build: "never",        // never compile llama.cpp from source
    usePrebuiltBinaries: true,
    skipDownload: true,    // never fetch a llama.cpp release
    progressLogs: false,
    logLevel: LlamaLogLevel.info,
    logger: (level, message) => {
        // Keep what tells which CPU variant and context settings llama.cpp chose.
        if (/load_backend|flash_attn|n_ubatch|n_batch|CPU_REPACK|repack/.test(message))
            notes.push(message.trim());
        else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)
            process.stderr.write(message);
    },
    maxThreads: threads
});
const model = await llama.loadModel({ modelPath: opts.model, gpuLayers: 0 });
const context = await model.createContext({
    contextSize: opts.context_size ?? 1024,
    batchSize: opts.batch_size ?? 512,
    sequences: 1,
    threads: { ideal: threads, min: threads },
    flashAttention: opts.flash_attention ?? "auto"
});
const sequence = context.getSequence();

function tokenize(text) {
    const toks = model.tokenize(text, true);
    return model.tokens.bos != null && model.tokens.shouldPrependBosToken ? [model.tokens.bos, ...toks] : toks;
}

async function one(text) {
    await sequence.clearHistory();
    const prompt = tokenize(text);
    const out = [];
    const start = process.hrtime.bigint();
    let first = 0n;
    for await (const tok of sequence.evaluate(prompt, { temperature: 0 })) {
        if (out.length === 0)
            first = process.hrtime.bigint();
        out.push(tok);
        if (out.length >= maxTokens)
            break;
    }
    const end = process.hrtime.bigint();
    return {
        prompt_tokens: prompt.length,
        completion_tokens: out.length,
        ttft_ms: Number(first - start) / 1e6,
        total_ms: Number(end - start) / 1e6,
        text: model.detokenize(out)
    };
}

await one(opts.warmup ?? opts.prompts[0]);
const runs = [];
for (const p of opts.prompts)
    runs.push(await one(p));

process.stdout.write(JSON.stringify({
    binding: llama.buildType, // "prebuilt" expected
    module: entry,
    llama_cpp_release: llama.llamaCppRelease?.release,
    system_info: llama.systemInfo,
    // The libggml-cpu-* variant ggml picked for this CPU, as mapped into this process.
    cpu_variant: fs.readFileSync("/proc/self/maps", "utf8").match(/libggml-cpu[-A-Za-z0-9_]*\.so/)?.[0] ?? "?",
    notes,
    threads: context.currentThreads,
    flash_attention: context.flashAttention,
    batch_size: context.batchSize,
    runs
}) + "\n");

await context.dispose();
await model.dispose();
await llama.dispose();
