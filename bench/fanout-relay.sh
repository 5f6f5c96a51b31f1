#!/bin/bash
# relay serve and one relay splitter in front of it, started as one child of
# relay bench (make bench-fanout); an interrupt stops both.
# usage: [SPLITTER_MEMORY=1GiB] fanout-relay.sh BIN PLC DIR
BIN=$1; PLC=$2; DIR=$3; SPLITTER_MEMORY=${SPLITTER_MEMORY:-1GiB}
rm -rf $DIR; mkdir -p $DIR
"$BIN" serve --allow-insecure-hosts --new-hosts-per-day 100000 --trusted-domains 'localhost:*' --plc-host $PLC \
  --seed-hosts-url= --log-level warn --api-listen 127.0.0.1:2580 --admin-listen 127.0.0.1:2581 \
  --data-dir $DIR/relay --memory-budget 1GiB &
p1=$!
sleep 1
"$BIN" splitter --upstream ws://127.0.0.1:2580 --log-level warn --api-listen 127.0.0.1:2570 --admin-listen 127.0.0.1:2571 \
  --data-dir $DIR/splitter --memory-budget $SPLITTER_MEMORY --max-consumers-per-ip 100000 --jetstream-max-subscribers-per-ip 100000 2>&1 &
p2=$!
trap 'kill -INT $p2 $p1; wait' INT TERM
wait
