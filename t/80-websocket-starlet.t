#!/usr/bin/perl
# WebSockets under Starlet (plackup -s Starlet, one worker): see SharedAreaTest::WebSocket.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SharedAreaTest::WebSocket qw(run_server_suite);

run_server_suite('starlet');
done_testing();
