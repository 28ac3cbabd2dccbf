#!/bin/sh
echo "$GREETING from a hoist build ($(cat /app/built.txt))"
