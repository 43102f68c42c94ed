// placeholder so the layer library is not empty; replaced as the layer lands
