<?php
// The test application of the compatibility matrix in PHP (php-cgi): the
// query strings described in app.py.
$op = $_GET['op'] ?? 'echo';
switch ($op) {
    case 'echo':
        header('Content-Type: text/plain');
        echo $_SERVER['QUERY_STRING'];
        break;
    case 'hash':
        header('Content-Type: text/plain');
        echo hash_file('sha256', 'php://input');
        break;
    case 'big':
        header('Content-Type: application/octet-stream');
        $block = '';
        for ($i = 0; $i < 251; $i++) {
            $block .= chr(($i * 31 + 7) % 251);
        }
        $block = str_repeat($block, 261);
        $n = (int) ($_GET['bytes'] ?? 0);
        while ($n > 0) {
            $k = min($n, strlen($block));
            echo substr($block, 0, $k);
            $n -= $k;
        }
        break;
    case 'cookies':
        header('Content-Type: text/plain');
        header('Set-Cookie: a=1', false);
        header('Set-Cookie: b=2', false);
        echo 'cookies';
        break;
    case 'notfound':
        header('Content-Type: text/plain');
        header('Status: 404 Not Found');
        echo 'missing';
        break;
    case 'stderr':
        header('Content-Type: text/plain');
        error_log('to-stderr');
        echo 'ok';
        break;
    default:
        header('Status: 400 Bad Request');
        echo 'unknown op';
}
