// Everything of CViTSupport is inline in its header; this file gives the target a source.
#include "CViTSupport.h"
