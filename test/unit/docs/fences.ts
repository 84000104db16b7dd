// The fenced blocks of a markdown file and the docs' marking convention (README "Contributing"):
// ```sh runs in test/e2e/docsRun.test.ts, ```sh azure needs Azure, ```sh norun follows an
// `<!-- norun: why -->` comment, anything else names a language that is not a shell.

export type ShellKind = 'run' | 'azure' | 'norun';

export interface Fence {
  /** 1-based line of the opening fence. */
  line: number;
  info: string;
  body: string;
  /** For shell blocks: run, azure or norun. */
  shell?: ShellKind;
  /** The norun reason from the comment before the block. */
  reason?: string;
}

export function fencesOf(markdown: string): Fence[] {
  const lines = markdown.split('\n');
  const fences: Fence[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, ticks, info] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      if (new RegExp(`^\\s*${ticks}\\s*$`).test(lines[j])) break;
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
    }
    const fence: Fence = { line: i + 1, info: info.trim(), body: body.join('\n') };
    const words = fence.info.split(/\s+/);
    if (words[0] === 'sh') {
      fence.shell = words[1] === 'azure' ? 'azure' : words[1] === 'norun' ? 'norun' : 'run';
      let k = i - 1;
      while (k >= 0 && lines[k].trim() === '') k--;
      const comment = k >= 0 ? /^\s*<!--\s*norun:\s*(.+?)\s*-->\s*$/.exec(lines[k]) : null;
      if (comment) fence.reason = comment[1];
    }
    fences.push(fence);
    i = j;
  }
  return fences;
}

/** What is wrong with a block's marking, or undefined. */
export function markingProblem(f: Fence): string | undefined {
  if (f.info === '') return 'an unlabelled block: name its language (sh, sh azure, sh norun, text, json, ...)';
  const first = f.info.split(/\s+/)[0];
  if (['bash', 'shell', 'console', 'zsh', 'shell-session'].includes(first))
    return `\`${first}\` block: shell blocks are \`sh\`, \`sh azure\` or \`sh norun\``;
  if (f.shell === 'run' && f.info !== 'sh') return `unknown shell marking \`${f.info}\``;
  if (f.shell === 'norun' && !f.reason) return '`sh norun` without an `<!-- norun: why -->` comment just before it';
  return undefined;
}

/** The commands of a shell block: continuation lines joined, blank lines and comments dropped. */
export function commandsOf(body: string): string[] {
  const out: string[] = [];
  let current = '';
  let heredoc: string | undefined;
  for (const raw of body.split('\n')) {
    if (heredoc !== undefined) {
      current += `\n${raw}`;
      if (raw.trim() === heredoc) {
        out.push(current);
        current = '';
        heredoc = undefined;
      }
      continue;
    }
    const line = current ? `${current}\n${raw}` : raw;
    if (!current && (raw.trim() === '' || raw.trim().startsWith('#'))) continue;
    if (/\\\s*$/.test(raw)) {
      current = line;
      continue;
    }
    const here = /<<-?\s*'?"?(\w+)'?"?/.exec(raw);
    if (here) {
      current = line;
      heredoc = here[1];
      continue;
    }
    out.push(line);
    current = '';
  }
  if (current) out.push(current);
  return out;
}
