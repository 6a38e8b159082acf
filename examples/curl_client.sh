#!/usr/bin/env bash
# A client of a running node's local HTTP API with nothing but curl, grep and sed.
#
#   tidings --home HOME up --listen 127.0.0.1:0 --api 127.0.0.1:0 --no-lan &
#   examples/curl_client.sh HOME          # LOG=blog examples/curl_client.sh HOME for another log
#
# HOME/api.json (written once the API serves) gives the URL; HOME/api.token the token.
set -euo pipefail

home=${1:?usage: $0 HOME (the home of a running \`tidings up\`)}
if [ ! -f "$home/api.json" ]; then
    echo "no $home/api.json: is \`tidings --home $home up\` running?" >&2
    exit 2
fi
url=$(sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' "$home/api.json")
auth="Authorization: Bearer $(cat "$home/api.token")"
log=${LOG:-curl}

# api PATH [CURL ARGS...]: the response body on stdout; exits 1 on an HTTP error.
api() {
    local path=$1 response status
    shift
    response=$(curl -sS -H "$auth" -w '\n%{http_code}' "$@" "$url$path")
    status=${response##*$'\n'}
    if [ "${status:0:1}" != 2 ]; then
        echo "HTTP $status from $path: ${response%$'\n'*}" >&2
        exit 1
    fi
    printf '%s\n' "${response%$'\n'*}"
}

# field NAME: the first "NAME": value in the JSON on stdin (strings unquoted).
field() {
    grep -o "\"$1\": *\(\"[^\"]*\"\|[0-9a-z]*\)" | sed -n '1{s/^[^:]*: *//;s/"//g;p;}'
}

# posts: "#SEQ TEXT" for each post in the JSON entries on stdin (one entry a chunk).
posts() {
    sed 's/{"feed": /\
&/g' | sed -n 's/.*"seq": \([0-9]*\).*"text": "\([^"]*\)".*/  #\1 \2/p'
}

# publish TEXT: post TEXT to the log; prints the entry as JSON.
publish() {
    api /v1/publish -H 'Content-Type: application/json' \
        -d "{\"log\": \"$log\", \"content\": {\"type\": \"post\", \"text\": \"$1\"}}"
}

echo "== 1. status: GET $url/v1/status"
status=$(api /v1/status)
echo "author $(field author <<<"$status"), listening for peers on $(field listen <<<"$status")"

echo "== 2. publish: POST /v1/publish (a post, as JSON) to the log '$log'"
entry=$(publish "hello from curl at $(date -u +%H:%M:%S)")
feed=$(field feed <<<"$entry")
seq=$(field seq <<<"$entry")
echo "published $feed #$seq"

echo "== 3. entries: GET /v1/feeds/$feed/entries (the last 5)"
api "/v1/feeds/$feed/entries?since=$((seq > 5 ? seq - 4 : 1))" | posts

echo "== 4. Atom: GET /feeds/$feed.atom (entry titles, newest first)"
api "/feeds/$feed.atom" | sed -n 's|^<title>\(.*\)</title>$|\1|p' \
    | sed '1s/^/  feed:  /; 2,$s/^/  entry: /'

echo "== 5. live: GET /v1/events?feeds=$feed for 3 s (curl -N), publishing meanwhile"
events=$(mktemp)
trap 'rm -f "$events"' EXIT
curl -s -N --max-time 3 -H "$auth" "$url/v1/events?feeds=$feed" >"$events" &
reader=$!
for _ in $(seq 50); do  # the "ready" event: the stream is open, nothing will be missed
    grep -q '^event: ready' "$events" && break
    sleep 0.1
done
live=$(publish "live while a client listens" | field seq)
echo "published #$live while the stream was open"
wait "$reader" || [ $? -eq 28 ] || { echo "the event stream failed" >&2; exit 1; }  # 28: timed out
echo "the stream as received (curl stopped after 3 s, as planned):"
grep '^event: \|^id: ' "$events" | paste -d ' ' - - | sed 's/^/  /'
grep '^data: ' "$events" | posts
