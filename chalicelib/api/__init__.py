"""The HTTP edge: parse the request, call one service, render the answer."""
