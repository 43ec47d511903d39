// Validates an AsyncAPI document with the reference parser; prints its diagnostics as JSON lines on stdout
// and exits 1 when any is an error. Usage: node validate.mjs PATH
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Parser, fromFile } from '@asyncapi/parser';

const path = resolve(process.argv[2]);
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, path).parse({ validateOptions: { allowedSeverity: { warning: true, info: true, hint: true } } });
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path.join('.') }));
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (document === undefined || errors.length > 0) process.exit(1);
console.log(JSON.stringify({ ok: true, channels: document.channels().all().map((c) => c.address()), operations: document.operations().all().map((o) => o.id()), messages: document.allMessages().all().map((m) => m.name()) }));
