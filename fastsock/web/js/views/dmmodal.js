// New direct message: find a person (GET /users?q=) and open (or create) the DM.
import * as api from '../api.js';
import { store } from '../store.js';
import { openModal } from './modal.js';
import { MemberPicker } from './picker.js';
import { h } from '../dom.js';

export function openDmModal({ onOpen }) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const picker = new MemberPicker({
    multiple: false,
    label: 'Find a person',
    onPick: async (user) => {
      try {
        const room = await api.post('/rooms/direct', { user_id: user.id });
        await store.loadRooms();
        m.close();
        onOpen(room.id);
      } catch (err) {
        error.textContent = err.message;
      }
    },
  });
  const m = openModal({ title: 'New message', body: h('div', { class: 'stack' }, picker.el, error), testid: 'dm-modal' });
  picker.input.focus();
}
