"""Application traffic secrets after the handshake, and KeyUpdate (RFC 8446 §4.6.3, §7.2).

Both roles hand their two application secrets to one ``ApplicationKeys`` object when the
handshake completes; it moves each direction forward independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .actions import Action, Epoch, KeyUpdateReceived, SendMessage
from .cipher_suites import CipherSuite
from .common import install
from .key_schedule import KeySchedule
from .messages import KeyUpdate, encode_message


@dataclass
class ApplicationKeys:
    schedule: KeySchedule
    suite: CipherSuite
    dtls: bool
    send_secret: bytes = field(repr=False)
    receive_secret: bytes = field(repr=False)
    write_epoch: int = int(Epoch.APPLICATION)
    read_epoch: int = int(Epoch.APPLICATION)
    # DTLS turns this off while its own KeyUpdate is unacknowledged (RFC 9147 §8).
    answer_update_requests: bool = True

    def send_update(self, update_requested: bool) -> list[Action]:
        """KeyUpdate goes out under the old keys, then our sending keys move forward."""
        message = encode_message(KeyUpdate(request_update=1 if update_requested else 0))
        actions: list[Action] = [SendMessage(epoch=self.write_epoch, data=message)]
        self.send_secret = self.schedule.next_traffic_secret(self.send_secret)
        self.write_epoch += 1
        actions.append(
            install("write", self.write_epoch, self.suite, self.send_secret, "", self.dtls)
        )
        return actions

    def receive_update(self, message: KeyUpdate) -> list[Action]:
        self.receive_secret = self.schedule.next_traffic_secret(self.receive_secret)
        self.read_epoch += 1
        requested = message.request_update == 1
        actions: list[Action] = [
            install("read", self.read_epoch, self.suite, self.receive_secret, "", self.dtls),
            KeyUpdateReceived(update_requested=requested),
        ]
        if requested and self.answer_update_requests:
            # RFC 8446 §4.6.3: answer with update_not_requested before sending more data.
            actions.extend(self.send_update(False))
        return actions
