// A tiny TSX highlighter. It only splits the source into tokens and wraps them in
// <span class="tok-…"> built with createElement; every token is a text node, so the
// output's text is exactly the input (generated code can never become markup).

const KEYWORDS = new Set(
  (
    "import from export default function const let var return if else for while do async await new " +
    "try catch finally throw typeof instanceof interface type extends implements as of in null " +
    "undefined true false this switch case break continue void keyof readonly enum declare"
  ).split(" "),
);

// order matters: comments and strings first, so their insides are not re-tokenised
const TOKEN = new RegExp(
  [
    String.raw`(?<com>\/\/[^\n]*|\/\*[\s\S]*?\*\/)`,
    String.raw`(?<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\x60(?:[^\x60\\]|\\[\s\S])*\x60)`,
    String.raw`(?<tag><\/?[A-Za-z][\w.]*|\/>)`,
    String.raw`(?<attr>\b[A-Za-z_][\w-]*(?==[{"']))`,
    String.raw`(?<num>\b\d+(?:\.\d+)?\b)`,
    String.raw`(?<word>\b[A-Za-z_$][\w$]*\b)`,
    String.raw`(?<punc>=>|[{}()[\];,.:?=<>!&|+\-*/%])`,
  ].join("|"),
  "g",
);

function kind(groups) {
  if (groups.com) return "com";
  if (groups.str) return "str";
  if (groups.tag) return "tag";
  if (groups.attr) return "attr";
  if (groups.num) return "num";
  if (groups.punc) return "punc";
  const word = groups.word;
  if (KEYWORDS.has(word)) return "kw";
  if (/^[A-Z]/.test(word)) return "type";
  return null;
}

/** Highlighted code as a DocumentFragment of text nodes and spans. */
export function highlight(source) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  let plain = "";
  for (const match of String(source).matchAll(TOKEN)) {
    const cls = kind(match.groups);
    plain += source.slice(last, match.index);
    last = match.index + match[0].length;
    if (!cls) {
      plain += match[0];
      continue;
    }
    if (plain) fragment.append(document.createTextNode(plain));
    plain = "";
    const span = document.createElement("span");
    span.className = `tok-${cls}`;
    span.textContent = match[0];
    fragment.append(span);
  }
  plain += String(source).slice(last);
  if (plain) fragment.append(document.createTextNode(plain));
  return fragment;
}
