"""Pusher: copies the blessed TFLite variant to a versioned serving destination."""
