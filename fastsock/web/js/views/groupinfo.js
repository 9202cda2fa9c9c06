// Group details: rename and privacy (admins), members with roles, add and remove members
// (admins), leave. And browsing/joining public groups.
import { h, icon } from '../dom.js';
import * as api from '../api.js';
import { store } from '../store.js';
import { openModal, confirmDialog } from './modal.js';
import { MemberPicker } from './picker.js';
import { avatar } from './avatar.js';
import { toast } from './toast.js';

export async function openGroupInfo(roomId) {
  const room = store.rooms.get(roomId);
  if (!room || room.kind !== 'group') return;
  const admin = room.role === 'admin';
  const error = h('p', { class: 'form-error', role: 'alert' });
  const members = h('ul', { class: 'member-list', 'aria-label': 'Members', 'data-testid': 'member-list' });
  const name = h('input', { id: 'group-info-name', maxlength: '80', value: room.name || '', disabled: !admin, 'data-testid': 'group-info-name' });
  const priv = h('input', { id: 'group-info-private', type: 'checkbox', checked: room.private, disabled: !admin });

  async function renderMembers() {
    const detail = await store.loadDetail(roomId);
    await Promise.all(detail.members.map((m) => store.fetchUser(m.user_id)));
    members.replaceChildren(...detail.members.map((m) => {
      const u = store.user(m.user_id) || { id: m.user_id, display_name: '…' };
      const me = m.user_id === store.me.id;
      return h('li', { class: 'member-row', 'data-testid': 'member-row' },
        avatar(u, 'sm', { presence: true }),
        h('span', { class: 'option-name', text: `${u.display_name}${me ? ' (you)' : ''}` }),
        h('span', { class: 'option-username', text: m.role === 'admin' ? 'Admin' : '' }),
        admin && !me ? h('button', {
          type: 'button', class: 'btn btn-small btn-danger-ghost', 'aria-label': `Remove ${u.display_name}`, 'data-testid': 'remove-member',
          onclick: () => removeMember(m.user_id, u.display_name),
        }, 'Remove') : null);
    }));
  }

  async function removeMember(userId, who) {
    const group = store.rooms.get(roomId)?.name || room.name;
    const ok = await confirmDialog({
      title: `Remove ${who} from ${group}?`,
      text: `${who} will no longer see the group or its new messages. An admin can add them again later.`,
      confirmLabel: 'Remove',
      danger: true,
    });
    if (!ok) return;
    // The removed row's button goes away: keep the focus in the dialog, on the row below.
    const at = [...members.querySelectorAll('[data-testid="remove-member"]')].findIndex((b) => b === document.activeElement);
    try {
      await api.del(`/rooms/${roomId}/members/${userId}`);
      await renderMembers();
    } catch (err) { error.textContent = err.message; }
    const left = members.querySelectorAll('[data-testid="remove-member"]');
    (left[Math.min(at, left.length - 1)] || picker.input).focus();
  }

  const picker = new MemberPicker({ label: 'Add members' });
  const addBtn = h('button', {
    type: 'button', class: 'btn btn-small', 'data-testid': 'add-members',
    onclick: async () => {
      const ids = picker.ids();
      if (!ids.length) return;
      try {
        await api.post(`/rooms/${roomId}/members`, { user_ids: ids });
        picker.chosen.clear();
        picker.renderChips();
        await renderMembers();
      } catch (err) { error.textContent = err.message; }
    },
  }, 'Add');
  const save = h('button', {
    type: 'button', class: 'btn btn-primary', hidden: !admin, 'data-testid': 'group-info-save',
    onclick: async () => {
      try {
        const body = {};
        if (name.value.trim() && name.value.trim() !== room.name) body.name = name.value.trim();
        if (priv.checked !== room.private) body.private = priv.checked;
        if (Object.keys(body).length) await api.patch(`/rooms/${roomId}`, body);
        await store.loadRooms();
        m.close();
      } catch (err) { error.textContent = err.message; }
    },
  }, 'Save');
  const leave = h('button', {
    type: 'button', class: 'btn btn-danger-ghost', 'data-testid': 'leave-group',
    onclick: async () => {
      const ok = await confirmDialog({ title: 'Leave this group?', text: 'You will stop receiving its messages. Someone will have to add you again to rejoin a private group.', confirmLabel: 'Leave', danger: true });
      if (!ok) return;
      try {
        await api.del(`/rooms/${roomId}/members/${store.me.id}`);
        m.close();
        store.dropRoom(roomId);
      } catch (err) { toast(`Couldn't leave: ${err.message}`, 'error'); }
    },
  }, icon('logout'), 'Leave group');
  const body = h('div', { class: 'stack' },
    h('div', { class: 'field' }, h('label', { for: 'group-info-name', text: 'Name' }), name),
    h('label', { class: 'switch-field', for: 'group-info-private' }, priv, h('strong', { text: 'Private' })),
    h('div', { class: 'field' }, h('span', { class: 'label', text: 'Members' }), members),
    admin ? h('div', { class: 'field' }, h('span', { class: 'label', text: 'Add people' }), h('div', { class: 'add-row' }, picker.el, addBtn)) : null,
    error);
  const close = h('button', { type: 'button', class: 'btn', onclick: () => m.close() }, admin ? 'Cancel' : 'Close');
  const m = openModal({ title: 'Group details', body, footer: [leave, h('span', { class: 'spacer' }), close, save], testid: 'group-info' });
  renderMembers().catch((err) => { error.textContent = err.message; });
}

export function openPublicGroups({ onOpen }) {
  const input = h('input', { type: 'search', class: 'field-input', placeholder: 'Search public groups', 'aria-label': 'Search public groups', autofocus: true, 'data-testid': 'public-search' });
  const list = h('ul', { class: 'member-list', 'aria-label': 'Public groups', 'data-testid': 'public-groups' });
  const status = h('p', { class: 'field-hint', 'aria-live': 'polite' });
  let seq = 0;
  async function load() {
    const mine = ++seq;
    try {
      const { rooms } = await api.get(`/rooms/public?q=${encodeURIComponent(input.value.trim())}`);
      if (mine !== seq) return;
      status.textContent = rooms.length ? '' : 'No public groups found';
      list.replaceChildren(...rooms.map((r) => {
        const joined = store.rooms.has(r.id);
        return h('li', { class: 'member-row', 'data-testid': 'public-group' },
          h('span', { class: 'avatar avatar-sm avatar-group', 'aria-hidden': 'true', text: '#' }),
          h('span', { class: 'option-name', text: r.name }),
          h('span', { class: 'option-username', text: `${r.member_count} member${r.member_count === 1 ? '' : 's'}` }),
          h('button', {
            type: 'button', class: 'btn btn-small', 'aria-label': joined ? `Open ${r.name}` : `Join ${r.name}`,
            onclick: async () => {
              try {
                if (!joined) await api.post(`/rooms/${r.id}/join`);
                await store.loadRooms();
                m.close();
                onOpen(r.id);
              } catch (err) { status.textContent = err.message; }
            },
          }, joined ? 'Open' : 'Join'));
      }));
    } catch (err) { status.textContent = err.message; }
  }
  let timer = null;
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 150); });
  const m = openModal({ title: 'Public groups', body: h('div', { class: 'stack' }, h('div', { class: 'field' }, input), status, list), testid: 'public-groups-modal' });
  load();
}
