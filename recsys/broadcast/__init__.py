"""Broadcast channels (TV, radio, cinema pre-show, kiosk): places and their daily programmes.

* :mod:`recsys.broadcast.places` -- the places table (``load_places``).
"""
