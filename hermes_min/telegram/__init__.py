"""Everything Telegram: the Bot API client, pacing, rendering and splitting, the streamer,
and the bot (access rules, signals, the run lock, the poller)."""
