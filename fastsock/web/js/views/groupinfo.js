// Group details: rename and privacy (admins), members with roles, add and remove members
// (admins), leave. Moderation: admins make members admins and back, and let removed members
// back in (removing someone bans them from rejoining); server admins deactivate and reactivate
// accounts. And browsing/joining public groups.
import { h, icon } from '../dom.js';
import * as api from '../api.js';
import { store } from '../store.js';
import { openModal, confirmDialog } from './modal.js';
import { openMenu } from './menu.js';
import { MemberPicker } from './picker.js';
import { avatar } from './avatar.js';
import { toast } from './toast.js';

export async function openGroupInfo(roomId) {
  const room = store.rooms.get(roomId);
  if (!room || room.kind !== 'group') return;
  const admin = room.role === 'admin';
  const error = h('p', { class: 'form-error', role: 'alert' });
  const members = h('ul', { class: 'member-list', 'aria-label': 'Members', 'data-testid': 'member-list' });
  const removed = h('ul', { class: 'member-list', 'aria-label': 'Removed members', 'data-testid': 'ban-list' });
  const removedField = h('div', { class: 'field', hidden: true }, h('span', { class: 'label', text: 'Removed members' }), removed);
  const name = h('input', { id: 'group-info-name', maxlength: '80', value: room.name || '', disabled: !admin, 'data-testid': 'group-info-name' });
  const priv = h('input', { id: 'group-info-private', type: 'checkbox', checked: room.private, disabled: !admin });

  const action = (label, aria, testid, onclick, danger = false) => h('button', {
    type: 'button', class: `btn btn-small${danger ? ' btn-danger-ghost' : ''}`, 'aria-label': aria, 'data-testid': testid, onclick,
  }, label);

  // A member's actions: Remove (an admin's common one) as a button, the rarer ones in a menu
  // behind a second button, so that a phone's row stays one line, and deactivating, a rare
  // server-wide act, does not sit in red next to everyone.
  function memberActions(m, u, name) {
    const isAdmin = m.role === 'admin';
    const id = m.user_id;
    const items = [];
    // A deactivated account can still be demoted, not promoted: it cannot act as an admin.
    if (admin && (isAdmin || !u.deactivated)) {
      items.push({ label: isAdmin ? 'Remove admin' : 'Make admin', testid: 'toggle-admin',
        action: () => act(api.patch(`/rooms/${roomId}/members/${id}`, { role: isAdmin ? 'member' : 'admin' }), id) });
    }
    if (store.serverAdmin) {
      items.push(u.deactivated
        ? { label: 'Reactivate account', testid: 'reactivate-account', action: () => setActive(u, true) }
        : { label: 'Deactivate account', testid: 'deactivate-account', danger: true, action: () => setActive(u, false) });
    }
    const menuBtn = items.length ? h('button', {
      type: 'button', class: 'icon-btn', 'aria-label': `Actions for ${name}`, 'aria-haspopup': 'menu', 'data-testid': 'member-menu',
      onclick: () => openMenu(menuBtn, items, `Actions for ${name}`),
    }, icon('more')) : null;
    return h('span', { class: 'member-actions' },
      admin ? action('Remove', `Remove ${name}`, 'remove-member', () => removeMember(id, name), true) : null,
      menuBtn);
  }

  async function renderMembers() {
    const detail = await store.loadDetail(roomId);
    await Promise.all(detail.members.map((m) => store.fetchUser(m.user_id)));
    members.replaceChildren(...detail.members.map((m) => {
      const u = store.user(m.user_id) || { id: m.user_id, display_name: '…' };
      const me = m.user_id === store.me.id;
      const name = store.displayName(m.user_id);
      return h('li', { class: 'member-row', 'data-testid': 'member-row', dataset: { user: m.user_id } },
        avatar(u, 'sm', { presence: true }),
        h('span', { class: 'option-name', text: `${name}${me ? ' (you)' : ''}` }),
        h('span', { class: 'option-username', text: m.role === 'admin' ? 'Admin' : '' }),
        me ? null : memberActions(m, u, name));
    }));
    if (admin) await renderRemoved();
  }

  // After an action the list is drawn anew: the focus goes back to the control `testid` of
  // that member's row (or, when they are gone, of the row now at their place).
  function refocus(userId, at, testid = 'member-menu') {
    const rows = [...members.querySelectorAll('[data-testid="member-row"]')];
    const row = rows.find((r) => r.dataset.user === userId) || rows[Math.min(at, rows.length - 1)];
    (row?.querySelector(`[data-testid="${testid}"]`) || picker.input).focus();
  }
  const rowIndex = (userId) => [...members.querySelectorAll('[data-testid="member-row"]')].findIndex((r) => r.dataset.user === userId);

  // Who an admin removed: they cannot rejoin until let back in here (or added again).
  async function renderRemoved() {
    const { bans } = await api.get(`/rooms/${roomId}/bans`);
    await Promise.all(bans.map((b) => store.fetchUser(b.user_id)));
    removedField.hidden = !bans.length;
    removed.replaceChildren(...bans.map((b) => {
      const u = store.user(b.user_id) || { id: b.user_id, display_name: '…' };
      const name = store.displayName(b.user_id);
      return h('li', { class: 'member-row', 'data-testid': 'banned-row' },
        avatar(u, 'sm'),
        h('span', { class: 'option-name', text: name }),
        h('span', { class: 'member-actions' },
          action('Let back in', `Let ${name} back in`, 'unban', () => act(api.del(`/rooms/${roomId}/bans/${b.user_id}`)))));
    }));
  }

  // One moderation request, then the lists again; a refusal shows the server's reason.
  // `userId`: the member acted on, whose menu button gets the focus back.
  async function act(request, userId = null, testid = undefined) {
    error.textContent = '';
    const at = userId ? rowIndex(userId) : -1;
    try {
      await request;
      await renderMembers();
    } catch (err) { error.textContent = err.message; }
    if (userId) refocus(userId, at, testid);
  }

  async function setActive(u, active) {
    if (!active) {
      const ok = await confirmDialog({
        title: `Deactivate the account of ${u.display_name}?`,
        text: `${u.display_name} is signed out everywhere at once and can no longer log in. Their messages stay. You can reactivate the account later.`,
        confirmLabel: 'Deactivate',
        danger: true,
      });
      if (!ok) return;
    }
    await act(api.post(`/admin/users/${u.id}/${active ? 'reactivate' : 'deactivate'}`).then((user) => store.setUser(user)), u.id);
  }

  async function removeMember(userId, who) {
    const group = store.rooms.get(roomId)?.name || room.name;
    const ok = await confirmDialog({
      title: `Remove ${who} from ${group}?`,
      text: `${who} will no longer see the group or its new messages, and cannot rejoin it until an admin lets them back in.`,
      confirmLabel: 'Remove',
      danger: true,
    });
    if (!ok) return; // the focus goes back to the Remove button (modal.js)
    // The removed row goes away: the focus stays in the dialog, on the row now at its place.
    await act(api.del(`/rooms/${roomId}/members/${userId}`), userId, 'remove-member');
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
        store.dropRoom(roomId, { actorId: store.me.id });
      } catch (err) { toast(`Couldn't leave: ${err.message}`, 'error'); }
    },
  }, icon('logout'), 'Leave group');
  const body = h('div', { class: 'stack' },
    h('div', { class: 'field' }, h('label', { for: 'group-info-name', text: 'Name' }), name),
    h('label', { class: 'switch-field', for: 'group-info-private' }, priv, h('strong', { text: 'Private' })),
    h('div', { class: 'field' }, h('span', { class: 'label', text: 'Members' }), members),
    removedField,
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
      list.replaceChildren(...rooms.map((r) => publicGroupRow(r)));
    } catch (err) { status.textContent = err.message; }
  }
  // A refused Join says why on the group's own row (an alert), and its button no longer
  // offers what the server refuses: a removed member cannot rejoin until let back in.
  function publicGroupRow(r) {
    const joined = store.rooms.has(r.id);
    const errorId = `join-error-${r.id}`;
    const rowError = h('p', { class: 'form-error row-error', id: errorId, role: 'alert', 'data-testid': 'join-error' });
    const btn = h('button', {
      type: 'button', class: 'btn btn-small', 'aria-label': joined ? `Open ${r.name}` : `Join ${r.name}`,
      onclick: async () => {
        if (btn.getAttribute('aria-disabled') === 'true') return;
        rowError.textContent = '';
        try {
          if (!joined) await api.post(`/rooms/${r.id}/join`);
          await store.loadRooms();
          m.close();
          onOpen(r.id);
        } catch (err) {
          const banned = err.code === 'forbidden';
          rowError.textContent = banned
            ? `You were removed from ${r.name}. An admin can let you back in.`
            : `Couldn't join ${r.name}: ${err.message}`;
          if (banned) {
            // aria-disabled, not disabled: the focus stays on the button, now describing why.
            btn.textContent = "Can't join";
            btn.setAttribute('aria-label', `Can't join ${r.name}`);
            btn.setAttribute('aria-disabled', 'true');
            btn.setAttribute('aria-describedby', errorId);
          }
        }
      },
    }, joined ? 'Open' : 'Join');
    return h('li', { class: 'member-row', 'data-testid': 'public-group' },
      h('span', { class: 'avatar avatar-sm avatar-group', 'aria-hidden': 'true', text: '#' }),
      h('span', { class: 'option-name', text: r.name }),
      h('span', { class: 'option-username', text: `${r.member_count} member${r.member_count === 1 ? '' : 's'}` }),
      btn, rowError);
  }

  let timer = null;
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 150); });
  const m = openModal({ title: 'Public groups', body: h('div', { class: 'stack' }, h('div', { class: 'field' }, input), status, list), testid: 'public-groups-modal' });
  load();
}
