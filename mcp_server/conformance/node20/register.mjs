// Loaded with NODE_OPTIONS=--import=<this folder>/register.mjs on Node 20 only.
import { register } from 'node:module';
register('./hooks.mjs', import.meta.url);
