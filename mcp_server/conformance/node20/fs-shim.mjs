// Node 20 lacks fs.globSync (added in Node 22); the conformance CLI imports it.
import fs from 'node:fs';
import path from 'node:path';
export * from 'node:fs';
export default fs;
function toRegex(pattern) {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      if (pattern[i + 1] === '*') { re += '.*'; i++; if (pattern[i + 1] === '/') i++; }
      else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}
export function globSync(patterns, options = {}) {
  const cwd = options.cwd ? String(options.cwd) : process.cwd();
  const list = Array.isArray(patterns) ? patterns : [patterns];
  const out = new Set();
  for (const pattern of list) {
    const abs = path.isAbsolute(pattern);
    const root = abs ? '/' : cwd;
    const rel = abs ? pattern.slice(1) : pattern;
    const staticPart = rel.split('/').filter((s, i, a) => !/[*?[]/.test(a.slice(0, i + 1).join('/'))).join('/');
    const start = path.join(root, staticPart);
    const re = toRegex(rel);
    const walk = (dir) => {
      let entries = [];
      try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
      for (const e of entries) {
        const full = path.join(dir, e.name);
        const r = path.relative(root, full);
        if (re.test(r)) out.add(abs ? full : r);
        if (e.isDirectory()) walk(full);
      }
    };
    if (fs.existsSync(start) && !/[*?]/.test(rel)) out.add(abs ? start : rel);
    else walk(fs.existsSync(start) ? start : root);
  }
  return [...out];
}
