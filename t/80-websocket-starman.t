#!/usr/bin/perl
# WebSockets under Starman (one worker, --preload-app): see SharedAreaTest::WebSocket.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SharedAreaTest::WebSocket qw(run_server_suite);

run_server_suite('starman');
done_testing();
