// An AI agent's JSON lines as a readable transcript, as `drover logs --pretty` renders them
// (crates/drover-agent/src/pretty.rs): assistant text, one line per tool call (`→ Bash: ls`),
// a shortened tool result (`← …`), the final result with turns, tokens and cost. A line the
// format does not know is shown as it is.

const RESULT_CHARS = 160;
const KEYS = ["command", "cmd", "file_path", "path", "absolute_path", "filePath", "pattern",
  "query", "url", "description", "prompt", "content"];

const oneLine = (text) => String(text).split(/\s+/).filter(Boolean).join(" ");

function summarize(input) {
  if (input == null) return "";
  if (typeof input === "string") return oneLine(input).slice(0, RESULT_CHARS);
  if (Array.isArray(input) && input.every((w) => typeof w === "string")) {
    return oneLine(input.join(" ")).slice(0, RESULT_CHARS);
  }
  if (typeof input === "object") {
    const text = (v) =>
      typeof v === "string" && v ? v : Array.isArray(v) && v.length && v.every((w) => typeof w === "string") ? v.join(" ") : null;
    for (const key of KEYS) if (text(input[key])) return oneLine(text(input[key])).slice(0, RESULT_CHARS);
    for (const value of Object.values(input)) if (text(value)) return oneLine(text(value)).slice(0, RESULT_CHARS);
  }
  return JSON.stringify(input).slice(0, RESULT_CHARS);
}

function shorten(text) {
  const lines = String(text ?? "").split("\n").filter((l) => l.trim());
  if (!lines.length) return "(no output)";
  let out = lines[0].trimEnd();
  if (out.length > RESULT_CHARS) out = `${out.slice(0, RESULT_CHARS)}…`;
  if (lines.length > 1) out += ` (+${lines.length - 1} lines)`;
  return out;
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const n = (v) => (v >= 10_000 ? `${Math.round(v / 1000)}k` : v >= 1000 ? `${(v / 1000).toFixed(1)}k` : String(v ?? 0));
const tokens = (input, output, cached) =>
  `${n(input)} in · ${n(output)} out${cached ? ` · ${n(cached)} cached` : ""}`;
const tool = (name, summary) => (summary ? `→ ${name}: ${summary}` : `→ ${name}`);
const text = (t) => String(t ?? "").replace(/\n+$/, "").split("\n").filter((l, i, all) => l || i < all.length - 1);

function claude(v, out) {
  switch (v.type) {
    case "system":
      if (v.subtype === "init") out.push(`● session ${v.session_id} · ${v.model} · ${v.cwd}`);
      return true;
    case "assistant":
      for (const block of Array.isArray(v.message?.content) ? v.message.content : []) {
        if (block.type === "text") out.push(...text(block.text));
        if (block.type === "tool_use") out.push(tool(block.name, summarize(block.input)));
      }
      return true;
    case "user":
      for (const block of Array.isArray(v.message?.content) ? v.message.content : []) {
        if (block.type !== "tool_result") continue;
        const body = Array.isArray(block.content) ? block.content.map((c) => c.text ?? "").join("\n") : block.content;
        out.push(`  ${block.is_error ? "✗" : "←"} ${shorten(body)}`);
      }
      return true;
    case "result": {
      for (const d of v.permission_denials ?? []) out.push(`! permission denied: ${d.tool_name}: ${summarize(d.tool_input)}`);
      const u = v.usage ?? {};
      const turns = v.num_turns ?? 0;
      const figures = `${turns} turn${turns === 1 ? "" : "s"} · ${tokens(u.input_tokens, u.output_tokens, u.cache_read_input_tokens)} · $${num(v.total_cost_usd).toFixed(4)}`;
      if (v.is_error || v.subtype !== "success") {
        out.push(`✗ ${v.subtype === "success" ? "error" : v.subtype} · ${figures}`);
        if (v.result) out.push(`  ${shorten(v.result)}`);
      } else out.push(`✓ done · ${figures}`);
      return true;
    }
    case "stream_event":
      return true;
    default:
      return false;
  }
}

function codex(v, out) {
  const item = v.item ?? {};
  switch (v.type) {
    case "thread.started":
      out.push(`● thread ${v.thread_id}`);
      return true;
    case "turn.started":
    case "item.updated":
      return true;
    case "item.started":
      if (item.type === "command_execution") out.push(tool("shell", summarize(item.command)));
      return true;
    case "item.completed":
      if (item.type === "agent_message") out.push(...text(item.text));
      else if (item.type === "command_execution") {
        const failed = item.exit_code != null && item.exit_code !== 0;
        out.push(`  ${failed ? "✗" : "←"} ${shorten(item.aggregated_output)}${failed ? ` (exit ${item.exit_code})` : ""}`);
      } else if (item.type === "error") out.push(`! ${item.message}`);
      return true;
    case "turn.completed": {
      const u = v.usage ?? {};
      const cached = u.cached_input_tokens ?? 0;
      out.push(`✓ turn done · ${tokens((u.input_tokens ?? 0) - cached, u.output_tokens, cached)}`);
      return true;
    }
    case "turn.failed":
      out.push(`✗ turn failed: ${v.error?.message ?? ""}`);
      return true;
    case "error":
      out.push(`! ${v.message}`);
      return true;
    default:
      return false;
  }
}

function flushOpen(state) {
  const open = state.open;
  state.open = undefined;
  return text(open);
}

function gemini(v, out, state) {
  switch (v.type) {
    case "init":
      out.push(`● session ${v.session_id} · ${v.model}`);
      return true;
    case "message":
      if (v.role === "assistant") {
        // Streamed in pieces: one transcript line grows until something else comes.
        // Bounded like the log's lines: a reply past 64 KiB goes out and a new one starts.
        if (state.open !== undefined) state.open += v.content ?? "";
        else state.open = v.content ?? "";
        if (state.open.length > 65_536) out.push(...flushOpen(state));
        return true;
      }
      out.push(`> ${shorten(v.content)}`);
      return true;
    case "tool_use":
      out.push(tool(v.tool_name, summarize(v.parameters)));
      return true;
    case "tool_result":
      out.push(v.status === "error" ? `  ✗ ${shorten(v.error?.message)}` : `  ← ${shorten(v.output)}`);
      return true;
    case "error":
      out.push(`! ${v.message}`);
      return true;
    case "result": {
      const s = v.stats ?? {};
      const figures = tokens((s.input_tokens ?? 0) - (s.cached ?? 0), s.output_tokens, s.cached);
      if (v.status === "error") out.push(`✗ error · ${figures}`, `  ${shorten(v.error?.message)}`);
      else out.push(`✓ done · ${figures}`);
      return true;
    }
    default:
      return false;
  }
}

function opencode(v, out, state) {
  const part = v.part ?? {};
  switch (v.type) {
    case "step_start":
    case "reasoning":
      return true;
    case "text":
      out.push(...text(part.text));
      return true;
    case "tool_use": {
      const s = part.state ?? {};
      out.push(tool(part.tool, summarize(s.input)));
      out.push(s.status === "error" ? `  ✗ ${shorten(s.error)}` : `  ← ${shorten(s.output)}`);
      return true;
    }
    case "step_finish": {
      const t = part.tokens ?? {};
      const sum = (state.steps ??= { input: 0, output: 0, cached: 0, cost: 0 });
      sum.input += num(t.input);
      sum.output += num(t.output) + num(t.reasoning);
      sum.cached += num(t.cache?.read);
      sum.cost += num(part.cost);
      if (part.reason !== "tool-calls") {
        out.push(`✓ done · ${tokens(sum.input, sum.output, sum.cached)} · $${sum.cost.toFixed(4)}`);
        state.steps = undefined;
      }
      return true;
    }
    case "error":
      out.push(`✗ ${v.error?.name ?? "error"}: ${v.error?.data?.message ?? v.error?.message ?? ""}`);
      return true;
    default:
      return false;
  }
}

const FORMATS = {
  "claude-stream-json": claude,
  "codex-json": codex,
  "gemini-stream-json": gemini,
  "opencode-json": opencode,
};

// A renderer for one agent's stdout lines; `parser` is its activity's parser. `line(text)`
// returns the transcript lines for one whole output line, or null to show it as it is.
// `flush()` returns a streamed text line still open (gemini), if any.
export function transcriptOf(parser) {
  const format = FORMATS[parser];
  const state = {};
  const flush = () => (state.open === undefined ? [] : flushOpen(state));
  return {
    line(raw) {
      if (!format) return null;
      const trimmed = raw.trim();
      if (!trimmed.startsWith("{")) return [...flush(), raw.replace(/\n$/, "")];
      let value;
      try {
        value = JSON.parse(trimmed);
      } catch {
        return [...flush(), raw.replace(/\n$/, "")];
      }
      const out = [];
      const known = format(value, out, state);
      const isText = value.type === "message" && value.role === "assistant";
      const before = isText ? [] : flush();
      if (!known) return [...before, raw.replace(/\n$/, "")];
      return [...before, ...out];
    },
    flush,
  };
}
