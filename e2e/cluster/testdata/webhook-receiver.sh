#!/bin/sh
# Run by `nc -l -p PORT -e` with the connection on stdin/stdout: keeps one HTTP request (headers,
# a blank line, then the body) in /tmp/request and answers 204. Reading the whole request before
# answering matters: nc alone would quit once its input ends, sometimes before the request came.
cr=$(printf '\r')
len=0
while IFS= read -r line; do
  line=${line%"$cr"}
  echo "$line" >>/tmp/request
  [ -z "$line" ] && break
  case "$line" in [Cc]ontent-[Ll]ength:*) len=${line#*: } ;; esac
done
head -c "$len" >>/tmp/request
printf 'HTTP/1.0 204 No Content\r\n\r\n'
