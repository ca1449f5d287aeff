package sched

import "unsafe"

const sizeofBucket = unsafe.Sizeof(bucket{})
