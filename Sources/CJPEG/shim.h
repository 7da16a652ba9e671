// jpeglib.h needs the definitions of FILE and size_t before it is included.
#include <stdio.h>
#include <stddef.h>
#include <jpeglib.h>
