// New group: name, private/public, members, all in one modal (no browser dialogs).
import { h } from '../dom.js';
import * as api from '../api.js';
import { store } from '../store.js';
import { openModal } from './modal.js';
import { MemberPicker } from './picker.js';
import { openPublicGroups } from './groupinfo.js';

export function openGroupModal({ onOpen }) {
  const name = h('input', { id: 'group-name', maxlength: '80', required: true, autofocus: true, 'data-testid': 'group-name', autocomplete: 'off' });
  const priv = h('input', { id: 'group-private', type: 'checkbox', checked: true, 'data-testid': 'group-private' });
  const picker = new MemberPicker({ label: 'Add members' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const create = h('button', { class: 'btn btn-primary', type: 'submit', form: 'group-form', 'data-testid': 'group-create' }, 'Create group');
  const form = h('form', {
    id: 'group-form', class: 'stack',
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!name.value.trim()) { error.textContent = 'Give the group a name.'; name.focus(); return; }
      create.disabled = true;
      try {
        const room = await api.post('/rooms', { name: name.value.trim(), private: priv.checked, member_ids: picker.ids() });
        await store.loadRooms();
        m.close();
        onOpen(room.id);
      } catch (err) {
        error.textContent = err.message;
        create.disabled = false;
      }
    },
  },
  h('div', { class: 'field' }, h('label', { for: 'group-name', text: 'Group name' }), name),
  h('label', { class: 'switch-field', for: 'group-private' }, priv,
    h('span', {}, h('strong', { text: 'Private' }), h('span', { class: 'field-hint', text: ' — only invited people can join. Untick to let anyone find and join it.' }))),
  h('div', { class: 'field' }, h('span', { class: 'label', text: 'Members' }), picker.el),
  error);
  const cancel = h('button', { class: 'btn', type: 'button', onclick: () => m.close() }, 'Cancel');
  const browse = h('button', { class: 'link-btn', type: 'button', 'data-testid': 'browse-public', onclick: () => { m.close(); openPublicGroups({ onOpen }); } }, 'Browse public groups');
  const m = openModal({ title: 'New group', body: form, footer: [browse, h('span', { class: 'spacer' }), cancel, create], testid: 'group-modal' });
  name.focus();
}
