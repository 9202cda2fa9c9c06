// The server's limits (GET /config, fetched once at sign-in) and the checks made with them
// before uploading, so that a refusal is explained at once, in this server's own figures
// (FASTSOCK_MAX_UPLOAD_BYTES, FASTSOCK_UPLOAD_TYPES), without sending the file first.
import * as api from './api.js';
import { fmtSize } from './dom.js';

const TYPE_NAMES = {
  'image/png': 'PNG', 'image/jpeg': 'JPEG', 'image/gif': 'GIF', 'image/webp': 'WebP',
  'application/pdf': 'PDF', 'text/plain': 'text', 'application/zip': 'ZIP', 'audio/mpeg': 'MP3',
  'audio/ogg': 'Ogg', 'video/mp4': 'MP4', 'video/webm': 'WebM',
};

// Types that say nothing of the content (fastsock/services/sniff.py, GENERIC): like no type.
const GENERIC = new Set(['application/octet-stream', 'binary/octet-stream']);

let config = null;

export async function loadLimits() {
  config = await api.get('/config');
}

// Characters a message may hold, and attachments one message may carry.
export const messageLimits = () => ({ chars: config.max_message_chars, attachments: config.max_attachments });

function allowedTypes(imagesOnly) {
  return imagesOnly ? config.upload_types.filter((t) => t.startsWith('image/')) : config.upload_types;
}

// The type the server will take a file's declared type for ('image/jpg' is 'image/jpeg'),
// or '' when it declares nothing the server goes by.
function canonicalType(type) {
  const base = (type || '').split(';')[0].trim().toLowerCase();
  if (GENERIC.has(base)) return '';
  return config.upload_type_aliases[base] || base;
}

// The avatar picker's `accept`: the allowed image types and the other names browsers give
// them. (The composer's takes any file: one without a type is left to the server's check.)
export function imageAcceptList() {
  const types = allowedTypes(true);
  const aliases = Object.keys(config.upload_type_aliases).filter((a) => types.includes(config.upload_type_aliases[a]));
  return [...types, ...aliases].join(',');
}

// "PNG, JPEG or GIF"
function typeNames(imagesOnly) {
  const names = allowedTypes(imagesOnly).map((t) => TYPE_NAMES[t] || t);
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names.join('');
}

// Why the server would refuse `file`, or null. `imagesOnly`: for an avatar. A file without a
// declared type (or a generic one) is left to the server, which decides by the content.
export function uploadRefusal(file, { imagesOnly = false } = {}) {
  if (file.size > config.max_upload_bytes) {
    return `Too large: ${fmtSize(file.size)} (the limit is ${fmtSize(config.max_upload_bytes)})`;
  }
  const type = canonicalType(file.type);
  if (imagesOnly && !allowedTypes(true).includes(type)) return `Choose a ${typeNames(true)} image.`;
  if (type && !allowedTypes(false).includes(type)) {
    return `This type of file can't be sent (${file.type}). Allowed: ${typeNames(false)}.`;
  }
  if (file.size === 0) return 'The file is empty';
  return null;
}
