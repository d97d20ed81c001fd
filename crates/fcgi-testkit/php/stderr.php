<?php
// Writes "message from stderr" with error_log() and a warning
// "warning from stderr" with trigger_error(); both travel on the FastCGI
// STDERR stream (the fixture pool has no error_log and display_errors=Off).
// Body: "ok".
header('Content-Type: text/plain');
error_log('message from stderr');
trigger_error('warning from stderr', E_USER_WARNING);
echo 'ok';
