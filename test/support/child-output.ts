import type { Subprocess } from "bun";

/** Collects what a child started with piped stdout and stderr writes, as it writes it; read it any time. */
export function outputOf(child: Subprocess<"ignore" | "pipe" | "inherit", "pipe", "pipe">): () => string {
  let log = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) log += decoder.decode(chunk, { stream: true });
  };
  void drain(child.stdout);
  void drain(child.stderr);
  return () => log;
}
