"""Numbered bus messages, so that no node misses one unawares (link.py, "Losing messages").

A node numbers the messages it sends per channel: its broadcasts ("*"), and its messages to
each other node (by that node's id). A receiver keeps the last number it had from each
sender on each of its two channels; anything but the next one is a gap. A heartbeat repeats
a node's last numbers, so that a receiver finds a loss that no later message would show.

`Numbers` is the sender's side, `Heard` the receiver's."""

from __future__ import annotations

import time

ALL = "*"  # the channel every node hears, in the numbers a heartbeat repeats
# A destination's number is repeated this long after its last use (and a former id's after
# the rename), counted again from when the node is back on the bus: long enough for a
# receiver to hear it in a heartbeat, which goes out every second.
REPEAT_S = 10.0

Listing = dict[str, dict[str, int]]  # node id (current or former) -> channel -> last number


class Numbers:
    """The numbers this node gave its messages, under its current id and its former ones."""

    def __init__(self) -> None:
        self._all = 0  # broadcasts of the current id
        self._to: dict[str, int] = {}  # destination node -> last number sent to it
        self._used: dict[str, float] = {}  # destination node -> repeated until then
        self._former: dict[str, tuple[float, dict[str, int]]] = {}  # id -> (until, numbers)

    def broadcast(self) -> int:
        self._all += 1
        return self._all

    def send(self, node_id: str) -> int:
        number = self._to[node_id] = self._to.get(node_id, 0) + 1
        self._used[node_id] = time.monotonic() + REPEAT_S
        return number

    def renamed(self, former_id: str) -> None:
        """The node took a new id: its numbering starts again; the old one's is repeated."""
        self._former[former_id] = (time.monotonic() + REPEAT_S, {ALL: self._all, **self._to})
        self._all, self._to, self._used = 0, {}, {}

    def forget(self, node_id: str) -> None:
        """`node_id` is dead: nothing more goes to it."""
        self._to.pop(node_id, None)
        self._used.pop(node_id, None)

    def repeat_again(self) -> None:
        """Back on the bus: what its heartbeats could not repeat meanwhile, they repeat now."""
        until = time.monotonic() + REPEAT_S
        self._used = dict.fromkeys(self._used, until)
        self._former = {node: (until, numbers) for node, (_, numbers) in self._former.items()}

    def listing(self, node_id: str) -> Listing:
        """For a heartbeat: the last numbers still worth repeating, by id."""
        now = time.monotonic()
        self._former = {n: entry for n, entry in self._former.items() if entry[0] > now}
        current = {ALL: self._all} | {
            node: self._to[node] for node, until in self._used.items() if until > now
        }
        return {node_id: current} | {n: numbers for n, (_, numbers) in self._former.items()}


class Heard:
    """The last number this node heard from each sender on each of its channels.

    Where a sender's numbering stands is learnt from its first message (or heartbeat) only
    for senders that were there before this node subscribed (`awaiting`, or any sender while
    it is None, until the node has read which nodes are alive). A sender that came later (a
    new node, or a node under a new id) starts at 1, and on this node's own channel every
    sender starts at 1: the channel is new with the id."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, bytes], int] = {}  # (sender, channel) -> last number
        self._tick = 0  # heartbeats so far, to forget senders gone quiet
        self._heard_at: dict[str, int] = {}  # sender -> tick it was last heard
        self.awaiting: set[str] | None = None  # senders whose numbering is still to be learnt

    def take(self, sender: str, channel: bytes, number: int, shared: bool) -> int | None:
        """A message numbered `number` came from `sender` on `channel` (`shared`: the channel
        all nodes hear): None if it is the next one, else the number that was expected."""
        self._heard_at[sender] = self._tick
        key = (sender, channel)
        last = self._last.get(key)
        if last is None:
            last = number - 1 if shared and self.may_start(sender) else 0
        self._last[key] = max(last, number)
        return None if number == last + 1 else last + 1

    def reported(self, node: str, channel: bytes, number: int, shared: bool, via: str) -> bool:
        """A heartbeat from `via` says `node` (itself or a former id of it) sent up to
        `number` on `channel`: False if some of those never came."""
        self._heard_at[node] = self._tick
        key = (node, channel)
        last = self._last.get(key)
        if last is None:
            if shared and (self.may_start(node) or self.may_start(via)):
                self._last[key] = number
                return True
            last = 0
        if last >= number:
            return True
        self._last[key] = number
        return False

    def seen(self, sender: str) -> None:
        """Any word from `sender` (a heartbeat, unnumbered): it is not gone quiet."""
        self._heard_at[sender] = self._tick

    def may_start(self, sender: str) -> bool:
        return self.awaiting is None or sender in self.awaiting

    def settle(self, sender: str) -> bool:
        """`sender`'s numbering is known now; True once no sender is awaited any more."""
        if self.awaiting is None:
            return False
        self.awaiting.discard(sender)
        return not self.awaiting

    def clear(self) -> None:
        """The subscription broke: nothing heard before says anything about what comes."""
        self._last.clear()
        self._heard_at.clear()
        self.awaiting = None

    def forget_channel(self, channel: bytes) -> None:
        """This node's former channel: nobody numbers anything for it any more."""
        self._last = {key: n for key, n in self._last.items() if key[1] != channel}

    def await_senders(self, live: set[str], channel: bytes) -> bool:
        """After (re)subscribing: the live nodes not heard on `channel` yet are the ones whose
        numbering may still be learnt from their next word; True if there are any."""
        self.awaiting = {node for node in live if (node, channel) not in self._last}
        return bool(self.awaiting)

    def beat(self, quiet_ticks: int) -> None:
        """Once a heartbeat: forget senders quiet for `quiet_ticks` (every live node is heard
        every heartbeat), so that memory does not grow with every node id ever seen."""
        self._tick += 1
        gone = {s for s, tick in self._heard_at.items() if self._tick - tick > quiet_ticks}
        for sender in gone:
            del self._heard_at[sender]
        if gone:
            self._last = {key: n for key, n in self._last.items() if key[0] in self._heard_at}
