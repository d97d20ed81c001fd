<?php
// ?ms=N sleeps N milliseconds, then prints "slept".
header('Content-Type: text/plain');
$ms = isset($_GET['ms']) ? max(0, (int) $_GET['ms']) : 0;
usleep($ms * 1000);
echo 'slept';
