// The npm openai package against the gateway: what e2e/npm_test.go runs, with
// RAGWAY_URL, RAGWAY_KEY and OPENAI_MODULE (the file URL of the installed package's
// index.mjs) in the environment. It prints one JSON object of what it saw.
const { default: OpenAI } = await import(process.env.OPENAI_MODULE);
const client = new OpenAI({ baseURL: process.env.RAGWAY_URL + "/v1", apiKey: process.env.RAGWAY_KEY, maxRetries: 0 });

const weather = {
  type: "object",
  properties: { city: { type: "string", minLength: 1, maxLength: 20 }, unit: { enum: ["celsius", "fahrenheit"] } },
  required: ["city", "unit"],
  additionalProperties: false,
};
const tools = [{ type: "function", function: { name: "get_weather", description: "The weather in a city.", parameters: weather } }];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const out = {};

// A required tool call, not streamed.
const required = await client.chat.completions.create({
  model: "chat", messages, tools, tool_choice: "required", parallel_tool_calls: false, temperature: 1, seed: 1, max_tokens: 300,
});
out.required = { finish: required.choices[0].finish_reason, calls: required.choices[0].message.tool_calls };

// Streamed: the SDK's stream helper assembles the call.
const stream = client.chat.completions.stream({
  model: "chat", messages, tools, tool_choice: "required", parallel_tool_calls: false, temperature: 1, seed: 2, max_tokens: 300,
});
const final = await stream.finalChatCompletion();
out.streamed = { finish: final.choices[0].finish_reason, calls: final.choices[0].message.tool_calls };

// A named function, then its result fed back.
const named = await client.chat.completions.create({
  model: "chat", messages, tools, tool_choice: { type: "function", function: { name: "get_weather" } }, temperature: 1, seed: 3, max_tokens: 300,
});
const call = named.choices[0].message.tool_calls[0];
const after = await client.chat.completions.create({
  model: "chat", tools, temperature: 0, max_tokens: 5,
  messages: [...messages, named.choices[0].message, { role: "tool", tool_call_id: call.id, content: '{"temperature": 18}' }],
});
out.named = { name: call.function.name, arguments: call.function.arguments, promptTokens: named.usage.prompt_tokens, afterPromptTokens: after.usage.prompt_tokens };

// Structured output.
const structured = await client.chat.completions.create({
  model: "chat", messages: [{ role: "user", content: "Describe the weather." }], temperature: 1, seed: 4, max_tokens: 300,
  response_format: { type: "json_schema", json_schema: { name: "weather", schema: weather, strict: true } },
});
out.structured = structured.choices[0].message.content;

// Responses: created, continued, streamed.
const first = await client.responses.create({ model: "echo", input: "tell me about ships", instructions: "Be brief." });
const second = await client.responses.create({ model: "echo", input: "and boats", previous_response_id: first.id });
const events = [];
let streamedText = "";
for await (const ev of await client.responses.create({ model: "echo", input: "one two three", store: false, stream: true })) {
  events.push(ev.type);
  if (ev.type === "response.output_text.delta") streamedText += ev.delta;
}
out.responses = {
  first: { id: first.id, text: first.output_text, input: first.usage.input_tokens },
  second: { text: second.output_text, input: second.usage.input_tokens },
  events, streamedText,
};

// Responses with a function tool, stored: the call, then its output continuing it.
const fnTools = [{ type: "function", name: "get_weather", parameters: weather, strict: true }];
const called = await client.responses.create({
  model: "chat", input: "Weather in Oslo?", tools: fnTools, tool_choice: "required", parallel_tool_calls: false, temperature: 1, max_output_tokens: 200,
});
const fc = called.output.find((it) => it.type === "function_call");
const answered = await client.responses.create({
  model: "chat", tools: fnTools, previous_response_id: called.id, max_output_tokens: 5,
  input: [{ type: "function_call_output", call_id: fc.call_id, output: '{"temperature": 3}' }],
});
out.responsesTools = { name: fc.name, arguments: fc.arguments, callID: fc.call_id, input: called.usage.input_tokens, afterInput: answered.usage.input_tokens, status: answered.status };

// Errors name the field.
try {
  await client.chat.completions.create({ model: "chat", messages, tools, tool_choice: { type: "function", function: { name: "nope" } } });
  out.refused = "not refused";
} catch (e) {
  out.refused = { status: e.status, param: e.param };
}
console.log(JSON.stringify(out));
