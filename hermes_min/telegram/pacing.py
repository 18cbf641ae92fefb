"""When the next Bot API call to a chat may go out: one budget per chat for every method."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

# "avoid sending more than one message per second" to a chat, and "not more than 20
# messages per minute to the same group" (Bots FAQ). Sends, edits, deletes, typing and
# drafts all draw on the same budget: penalties escalate when they are paced apart.
GROUP_LIMIT = 20
GROUP_WINDOW = 60.0
GROUP_INTERVAL = GROUP_WINDOW / GROUP_LIMIT  # paced at 3 s, a group never meets its wall
# "If you're sending bulk notifications to multiple users, the API will not allow more than
# 30 messages per second or so" (Bots FAQ): one budget for the whole bot, shared by chats.
BOT_LIMIT = 30
BOT_WINDOW = 1.0


class ChatBudget:
    """The pacing of one chat: a minimum interval, a per-window cap for groups, 429 pauses."""

    def __init__(self, interval: float, group: bool, budgets: Budgets) -> None:
        self.group = group
        self.interval = max(interval, budgets.group_interval) if group else interval
        self._window = budgets.group_window
        self._clock = budgets.clock
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._paused_until = float("-inf")
        self._recent: deque[float] = deque(maxlen=budgets.group_limit)
        self._bot = budgets.bot

    def ready_at(self) -> float:
        """The clock time at which the next call may go out (this chat's and the bot's)."""
        with self._lock:
            ready = max(self._last + self.interval, self._paused_until)
            if self.group and len(self._recent) == self._recent.maxlen:
                ready = max(ready, self._recent[0] + self._window)
        return max(ready, self._bot.ready_at())

    def now(self) -> float:
        """This budget's clock time (time.monotonic(), unless a test gave another clock)."""
        return self._clock()

    def ready(self) -> bool:
        """Whether a call may go out now."""
        return self._clock() >= self.ready_at()

    def spend(self, share: float = 1.0) -> None:
        """Record a call going out now; `share` < 1 for a chat action, which is no message."""
        now = self._clock()
        with self._lock:
            # The next call may follow after `share` of the interval.
            self._last = now - (1.0 - share) * self.interval
            if share >= 1.0:
                self._recent.append(now)  # only messages count towards a group's 20 a minute
        self._bot.spend(now)

    def claim(self, share: float = 1.0) -> bool:
        """Record a call going out now if this chat's budget and the bot's allow one; False
        (nothing recorded) if not. One step, so two chats cannot both take the bot's last
        slot: checking ready() and then calling spend() could."""
        now = self._clock()
        with self._lock:
            ready = max(self._last + self.interval, self._paused_until)
            if self.group and share >= 1.0 and len(self._recent) == self._recent.maxlen:
                ready = max(ready, self._recent[0] + self._window)
            if now < ready or not self._bot.take(now):
                return False
            self._last = now - (1.0 - share) * self.interval
            if share >= 1.0:
                self._recent.append(now)
        return True

    def take_turn(self, deadline: float, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Wait for this chat's turn (and the bot's) and claim it; False if it would come
        after `deadline` (on this budget's clock)."""
        while True:
            ready = self.ready_at()
            if ready > deadline:
                return False
            wait = ready - self._clock()
            if wait > 0:
                sleep(min(wait, 1.0))
            elif self.claim():
                return True

    def idle_since(self, moment: float) -> bool:
        """Whether this chat made no call and had no pause since `moment`."""
        with self._lock:
            last = max(self._last, self._paused_until, *(self._recent or [float("-inf")]))
            return last < moment

    def pause(self, seconds: float) -> None:
        """Telegram said 429: nothing more to this chat for exactly `seconds`."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


class BotBudget:
    """The whole bot's calls: at most `limit` in any `window` seconds, whatever the chat."""

    def __init__(self, limit: int, window: float) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=max(limit, 1))

    def ready_at(self) -> float:
        """The clock time at which the bot may make another call."""
        with self._lock:
            if len(self._recent) < (self._recent.maxlen or 1):
                return float("-inf")
            return self._recent[0] + self._window

    def spend(self, now: float) -> None:
        """Record a call going out at `now`."""
        with self._lock:
            self._recent.append(now)

    def take(self, now: float) -> bool:
        """Record a call at `now` if the window has room; False (nothing recorded) if not."""
        with self._lock:
            full = len(self._recent) == self._recent.maxlen
            if full and self._recent[0] + self._window > now:
                return False
            self._recent.append(now)
            return True


_KEPT = 1024  # chat budgets kept before idle ones are forgotten (a long poll meets many)


class Budgets:
    """One ChatBudget per chat, and the bot's own, shared by every streamer of a process."""

    def __init__(
        self,
        interval: float,
        *,
        group_interval: float = GROUP_INTERVAL,
        group_limit: int = GROUP_LIMIT,
        group_window: float = GROUP_WINDOW,
        bot_limit: int = BOT_LIMIT,
        bot_window: float = BOT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.bot = BotBudget(bot_limit, bot_window)
        self.group_interval = group_interval
        self.group_limit = group_limit
        self.group_window = group_window
        self.clock = clock
        self._lock = threading.Lock()
        self._chats: dict[int | str, ChatBudget] = {}

    def for_chat(self, chat_id: int | str) -> ChatBudget:
        """The budget of `chat_id` (negative ids are groups)."""
        with self._lock:
            if len(self._chats) >= _KEPT and chat_id not in self._chats:
                self._forget_idle()
            if chat_id not in self._chats:
                group = isinstance(chat_id, int) and chat_id < 0
                self._chats[chat_id] = ChatBudget(self.interval, group, self)
            return self._chats[chat_id]

    def _forget_idle(self) -> None:
        """Drop the budgets whose chats could call again at once (under the lock): they
        hold nothing a new budget would not."""
        now = self.clock()
        window = max(self.group_window, self.interval)
        for chat_id, budget in list(self._chats.items()):
            if budget.idle_since(now - window):
                del self._chats[chat_id]
