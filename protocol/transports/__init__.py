"""Thin drivers of the Sans-IO connections: TCP and UDP, blocking and asyncio."""
