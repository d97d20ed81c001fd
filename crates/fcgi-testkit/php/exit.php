<?php
// ?code=N prints "exiting with N" then calls exit(N).
// (php-fpm still reports appStatus 0 in END_REQUEST.)
header('Content-Type: text/plain');
$code = isset($_GET['code']) ? (int) $_GET['code'] : 0;
echo 'exiting with ' . $code;
exit($code);
