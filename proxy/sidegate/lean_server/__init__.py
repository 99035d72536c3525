"""The lean HTTP/1.1 server for the hot routes, in front of aiohttp for the rest."""
