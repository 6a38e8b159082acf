"""HTTP: the local API for apps (:mod:`tidings.http.api`) and the feed gateway."""
