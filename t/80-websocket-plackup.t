#!/usr/bin/perl
# WebSockets under plackup's default server, HTTP::Server::PSGI: see SharedAreaTest::WebSocket.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SharedAreaTest::WebSocket qw(run_server_suite);

run_server_suite('plackup');
done_testing();
