"""One call on this worker: its peers, who is sent whose tracks, and who is speaking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sfu.speaker import ActiveSpeaker

if TYPE_CHECKING:
    from sfu.peer import Peer
    from sfu.publisher import Publisher


class Room:
    def __init__(self, call_id: str, room_id: str) -> None:
        self.call_id = call_id
        self.room_id = room_id
        self.peers: dict[str, Peer] = {}  # by user id: one peer per user
        self.speaker = ActiveSpeaker(self._speaker_changed)

    @property
    def forwarded(self) -> int:
        return sum(peer.forwarded for peer in self.peers.values())

    def add(self, peer: Peer) -> None:
        """A new peer is sent every track already published here (its first offer)."""
        others = list(self.peers.values())
        self.peers[peer.user_id] = peer
        self.broadcast("peer.joined", {"user_id": peer.user_id}, skip=peer)
        for other in others:
            for publisher in other.published():
                peer.subscribe(publisher)
        peer.negotiate()

    def remove(self, peer: Peer) -> None:
        if self.peers.get(peer.user_id) is not peer:
            return
        del self.peers[peer.user_id]
        for publisher in peer.publishers.values():
            self.unpublish(peer, publisher)
        self.speaker.forget(peer.user_id)
        self.broadcast("peer.left", {"user_id": peer.user_id})

    def publish(self, peer: Peer, publisher: Publisher) -> None:
        for other in self.peers.values():
            if other is not peer:
                other.subscribe(publisher)

    def unpublish(self, peer: Peer, publisher: Publisher) -> None:
        for other in self.peers.values():
            if other is not peer:
                other.unsubscribe(publisher)

    def state_changed(self, peer: Peer) -> None:
        self.broadcast("peer.state", peer.view(), skip=peer)

    def broadcast(self, type_: str, data: dict[str, Any], *, skip: Peer | None = None) -> None:
        for peer in self.peers.values():
            if peer is not skip:
                peer.channel.send(type_, data)

    def _speaker_changed(self, user_id: str | None) -> None:
        self.broadcast("speaker", {"user_id": user_id})
