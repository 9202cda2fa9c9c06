// Attachments in messages: image thumbnails (click for full size) and file cards.
import { h, icon, fmtSize } from '../dom.js';
import { blobUrl } from '../api.js';
import { openModal } from './modal.js';
import { toast } from './toast.js';

export function renderAttachments(list) {
  if (!list || !list.length) return null;
  return h('div', { class: 'attachments' }, list.map((a) => (a.thumbnail_url ? imageAttachment(a) : fileCard(a))));
}

function imageAttachment(a) {
  const img = h('img', { alt: a.name, 'data-testid': 'image-preview' });
  const frame = h('button', { type: 'button', class: 'image-attachment loading', 'aria-label': `Open image ${a.name}`, onclick: () => openImage(a) }, img);
  if (a.width && a.height) {
    const w = Math.min(320, a.width);
    frame.style.width = `${w}px`;
    frame.style.aspectRatio = `${a.width} / ${a.height}`;
  }
  blobUrl(a.thumbnail_url).then((url) => { img.src = url; frame.classList.remove('loading'); })
    .catch(() => { frame.classList.remove('loading'); frame.classList.add('broken'); });
  return frame;
}

function openImage(a) {
  const img = h('img', { class: 'lightbox-img', alt: a.name, 'data-testid': 'full-image' });
  const download = h('button', { class: 'btn', type: 'button', onclick: () => downloadFile(a) }, icon('download'), 'Download');
  openModal({ title: a.name, body: h('div', { class: 'lightbox' }, img), footer: [download], testid: 'image-viewer', wide: true });
  blobUrl(a.url).then((url) => { img.src = url; }).catch((err) => toast(`Couldn't load the image: ${err.message}`, 'error'));
}

export async function downloadFile(a) {
  try {
    const url = await blobUrl(a.url);
    const link = h('a', { href: url, download: a.name });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    toast(`Download failed: ${err.message}`, 'error');
  }
}

function fileCard(a) {
  return h('div', { class: 'file-card', 'data-testid': 'file-card' },
    h('span', { class: 'file-icon' }, icon('file')),
    h('span', { class: 'file-meta' },
      h('span', { class: 'file-name', text: a.name, title: a.name }),
      h('span', { class: 'file-size', text: `${fmtSize(a.size)} · ${a.content_type}` })),
    h('button', { type: 'button', class: 'icon-btn', 'aria-label': `Download ${a.name}`, onclick: () => downloadFile(a) }, icon('download')));
}
