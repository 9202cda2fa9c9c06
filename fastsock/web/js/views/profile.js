// Profile: display name, status message, avatar upload with a preview; log out.
import { h, icon } from '../dom.js';
import * as api from '../api.js';
import { imageAcceptList, uploadRefusal } from '../limits.js';
import { store } from '../store.js';
import { openModal } from './modal.js';
import { avatar } from './avatar.js';
import { toast } from './toast.js';

export function openProfile({ onLogout }) {
  const me = store.me;
  let avatarFile = null;
  const preview = h('div', { class: 'avatar-preview', 'data-testid': 'avatar-preview' }, avatar(me, 'xl'));
  const accept = imageAcceptList(); // empty when the server takes no images
  const fileInput = h('input', { type: 'file', accept, hidden: true, 'data-testid': 'avatar-input' });
  const avatarError = h('p', { class: 'form-error', role: 'alert' });
  fileInput.addEventListener('change', () => {
    const file = fileInput.files[0];
    avatarError.textContent = '';
    if (!file) return;
    const refusal = uploadRefusal(file, { imagesOnly: true });
    if (refusal) { avatarError.textContent = refusal; return; }
    avatarFile = file;
    preview.replaceChildren(h('span', { class: 'avatar avatar-xl' }, h('img', { src: URL.createObjectURL(file), alt: 'New avatar preview' })));
  });
  const display = h('input', { id: 'profile-display', maxlength: '64', value: me.display_name, 'data-testid': 'profile-display-name', autofocus: true });
  const status = h('input', { id: 'profile-status', maxlength: '140', value: me.status_message || '', placeholder: 'What are you up to?', 'data-testid': 'profile-status' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const progress = h('progress', { max: '100', value: '0', hidden: true, 'aria-label': 'Avatar upload' });
  const save = h('button', { class: 'btn btn-primary', type: 'submit', form: 'profile-form', 'data-testid': 'profile-save' }, 'Save');
  const form = h('form', {
    id: 'profile-form', class: 'stack',
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      save.disabled = true;
      try {
        const body = {};
        if (display.value.trim() && display.value.trim() !== me.display_name) body.display_name = display.value.trim();
        if (status.value.trim() !== (me.status_message || '')) body.status_message = status.value.trim();
        if (avatarFile) {
          progress.hidden = false;
          const up = api.upload(avatarFile, (p) => { progress.value = Math.round(p * 100); });
          const uploaded = await up.promise;
          body.avatar_upload_id = uploaded.id;
        }
        if (Object.keys(body).length) {
          const user = await api.patch('/users/me', body);
          store.setUser(user);
        }
        m.close();
        toast('Profile saved', 'info', 3000);
      } catch (err) {
        error.textContent = err.message;
        save.disabled = false;
        progress.hidden = true;
      }
    },
  },
  h('div', { class: 'avatar-row' }, preview,
    h('div', { class: 'stack-tight' },
      h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'avatar-choose', disabled: !accept, title: accept ? undefined : 'This server accepts no images', onclick: () => fileInput.click() }, 'Choose a picture…'),
      h('span', { class: 'field-hint', text: `@${me.username}` }), progress, avatarError)),
  fileInput,
  h('div', { class: 'field' }, h('label', { for: 'profile-display', text: 'Display name' }), display),
  h('div', { class: 'field' }, h('label', { for: 'profile-status', text: 'Status message' }), status),
  error);
  const logout = h('button', { class: 'btn btn-danger-ghost', type: 'button', 'data-testid': 'logout', onclick: () => { m.close(); onLogout(); } }, icon('logout'), 'Log out');
  const cancel = h('button', { class: 'btn', type: 'button', onclick: () => m.close() }, 'Cancel');
  const m = openModal({ title: 'Your profile', body: form, footer: [logout, h('span', { class: 'spacer' }), cancel, save], testid: 'profile-modal' });
  display.focus();
}
