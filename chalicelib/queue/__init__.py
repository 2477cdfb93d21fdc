"""The live queue in Redis: keys, the Lua scripts and their one caller, reads, locks, rate limit."""
